"""Generated gRPC stubs for gate.v1 (from proto/gate/v1/gate.proto by `make proto`; do not edit)."""
