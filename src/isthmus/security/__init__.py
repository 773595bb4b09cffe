"""Zero-trust security: the mesh CA, workload identities, and the SDS configuration that uses them.

- `isthmus.security.identity`: SPIFFE ids (``spiffe://<trust domain>/ns/<ns>/sa/<sa>``);
- `isthmus.security.ca`: the certificate authority (self-signed or plugged-in root, CSR signing);
- `isthmus.security.ca_server`: Istio's ``IstioCertificateService`` over gRPC, per-pod tokens, clients;
- `isthmus.security.sds`: Istio's SDS secret names and the TLS contexts that refer to them.

The node agent's side (local key, CSR, SDS server, rotation) is `isthmus.agent.sds`.
"""
