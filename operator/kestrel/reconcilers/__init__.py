"""What one pass over a ModelDeployment does, one concern per module, each owning one condition or none.

`run` calls them in order, `summary` derives Ready from the conditions they set, and `run` writes the status once.

- `context`: what every reconciler receives (`Context`: the object, its spec, the status being built, the clock).
- `run`: one pass: the reconcilers in order, the summary, the audit trail and one status write.
- `summary`: Ready and the display phase, from the other conditions.
- `audit`: one audit log line per change of spec, engine, revision, certificate, keys or access.
- `installed`: whether an optional add-on's CRD is installed, asked once a minute.
- `pod_problems`: why a build or Triton pod does not start, as a condition's reason and message.
- `engine/`: the engine and the store it lives in (Built, Validated).
- `security/`: certificates, keys and who may call the model (CertificateReady, Encrypted, AccessConfigured).
- `serving/`: Triton serving the engine, its rollouts and the live checks (Available, Progressing, Degraded,
  Verified, Drift).

When a pass runs (locks, the drift-check loop, owned-Deployment events) is `kestrel.runtime`.
"""
