"""Evidence: what makes a session's record trustworthy for compliance.

`vbranch.evidence.journal` is the one writer of the hash-chained timeline and
audit rows; `vbranch.evidence.manifests` seals a session in a signed manifest and
verifies sessions and the audit chain; `vbranch.evidence.signing` holds the
branch's Ed25519 key; `vbranch.evidence.export` writes a session's evidence
archive and `vbranch.evidence.retention` purges recordings past their retention;
`vbranch.evidence.ports` names what they use of the runtime. Nothing is
re-exported here, so importing the package is cheap.
"""
