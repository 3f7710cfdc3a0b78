"""Image sources: every way gate can read an image's identity, all returning the same ImageInfo.

- refs.py: parse and validate the `image` argument into an ImageRef (pure).
- registry.py: RegistryClient, an OCI distribution client (manifest, index, config; digests verified).
- archive.py: docker-save tarballs and OCI layout directories, plus the manifest/config helpers that
  registry.py shares.
- resolver.py: SourceResolver, the gate.ports.ImageResolver that picks the source for a ref and builds
  the ScanTarget a scanner reads.
- engine.py: the docker SDK (the only module allowed to import docker).

Nothing is re-exported here, so importing gate.images.refs stays free of requests and dxf.
"""
