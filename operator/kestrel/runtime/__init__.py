"""When passes run, not what they do: the scheduling between Kopf's handlers and the reconcilers.

- `serial`: one pass at a time per ModelDeployment, on a body at least as new as the status last written.
- `resync`: the drift check, one loop over every watched model each interval, with its compact body registry.
- `owned`: owned Deployments' watch events, which start their owner's pass on a small pool of its own.

A pass itself (the ordered reconcilers, the summary and the status write) is `reconcilers.run`.
"""
