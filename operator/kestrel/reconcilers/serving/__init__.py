"""Triton serving the validated engine: the rollouts and the operator's checks of the live model.

- `serving`: the Service, the rolling or canary rollout of each revision; owns Available, Progressing, Degraded, written
  from what the rollouts below return.
- `workload`: the Triton Deployment of one revision and how far its rollout has got; owns no condition.
- `canary`: steps a new revision in beside the stable one, judged on Triton's metrics; owns no condition.
- `canary_analysis`: the canary's arithmetic, without I/O; owns no condition.
- `canary_metrics`: the canary pods' Triton metrics, pod by pod; owns no condition.
- `argo_rollout`: the canary in Argo Rollouts' hands, where its CRDs exist; owns no condition.
- `checks`: the operator as a client of the live model (probes, metrics); owns Verified.
- `probe_cache`: the build's probes, read from the store for the checks; owns no condition.
- `drift`: the served model's outputs against the validation baseline; owns Drift.
"""
