"""The engine and the store it lives in.

- `engine`: an engine for the current spec, built by a Job or found in the cache, and its gate; owns Built and
  Validated.
- `build_progress`: a running build's stage, from its pod's log; owns no condition.
- `cache`: a stored engine with the spec's key, verified before it is reused; owns no condition.
- `storage`: the operator's own access to the engine store; owns no condition.
- `grants`: the store grants of build Jobs and serving pods; owns no condition.
- `garbage`: stored engines no revision references, removed; owns no condition.
"""
