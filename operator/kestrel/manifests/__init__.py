"""Pure builders: a ModelDeployment's spec in, the Kubernetes objects that serve it out, as plain dicts.

Nothing here performs I/O or knows about a client; `kube/` applies what these functions return, and the
reconcilers decide which of them to call. One concept per module:

- context: the owner (and its ownerReference) and the operator-wide settings; names, labels: naming and selection
- build_job: the build Job; build_network: its pods' NetworkPolicy
- triton: the stable and canary Deployments and their ServiceAccount
- service, disruption, autoscaling: the Service, the PodDisruptionBudget, the HPA or KEDA ScaledObject
- access: the Role and RoleBinding that read the API key (and the CA bundle), the NetworkPolicy
- trust: the ConfigMap with the CA certificate that verifies the server, for clients
- argo, analysis: the canary as an Argo Rollout, and the PromQL that judges a canary step
- pod_monitor: the Prometheus Operator PodMonitor that has Prometheus scrape the Triton pods
- placement, hardening, probes, transport, store, keys, pull_secrets: the pod-level pieces the builders share
"""
