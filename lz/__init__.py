"""The LifecycleZero operator CLI (`lz`)."""

import os

# gRPC's C core logs handshake and connection problems to stderr on its own; `lz` reports them as
# one line instead. Set before grpc is first imported; an explicit GRPC_VERBOSITY still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
