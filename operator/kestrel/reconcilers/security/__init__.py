"""Certificates, keys and who may call the model.

- `tls`: the server certificate and mutual TLS client certificates; owns CertificateReady.
- `encryption`: the signing pair and the key-encryption key; owns Encrypted.
- `key_rotation`: stored engines re-wrapped under the newest KEK; owns no condition (part of Encrypted).
- `access`: the NetworkPolicy, the API key and who may read it; owns AccessConfigured.
- `generated`: Secrets a pass generates once and keeps (signing key, API key); owns no condition.
"""
