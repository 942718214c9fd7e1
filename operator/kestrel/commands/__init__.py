"""The commands a person runs against a cluster or a store: `kestrel status`, `kestrel canary`, `kestrel upload`.

Each module adds its subcommand to the parser `kestrel.cli` builds and runs it. They reach the API server only
through `kestrel.kube` (kube/kubeconfig.py for kubectl's connection rules) and the store through
`kestrel.storage`; what they print is built by pure functions the tests call directly.
"""
