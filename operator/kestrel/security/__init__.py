"""Kestrel's security library: pure functions and small classes, no Kubernetes API calls.

Modules, one concept each:

- `streaming`: chunked AES-256-GCM streaming AEAD over one file (constant memory).
- `kms`: the key-encryption-key provider interface, the key ring, and the legacy symmetric KEK (no KMS yet).
- `x25519`: KEKs as X25519 key pairs: the public key wraps (what a build holds), only the private key unwraps.
- `envelope`: per-engine data keys, wrapped and re-wrapped by a key-encryption key.
- `manifest`: the Ed25519-signed artifact manifest (canonical JSON).
- `artifact`: pack a model repository into ciphertext + manifest, and unpack it with no plaintext before verification.
- `certificates`: the operator CA, server and client certificates, the renewal decision.
- `audit`: structured audit log records and the guard that keeps key material out of logs.
- `errors`: the security errors, all rooted at `kestrel.api.errors.KestrelError`.

Code imports modules, not names: `from kestrel.security import streaming` then `streaming.encrypt_file(...)`.
"""
