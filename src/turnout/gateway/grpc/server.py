"""The gRPC listener of one gateway worker, started and stopped with the worker's lifespan.

It runs on the worker's own event loop, beside uvicorn: grpc.aio polls its completion queue
from a thread of its own and wakes the loop through a file descriptor, which uvloop serves
like any asyncio loop (checked with grpcio 1.85 and uvloop 0.23), so a call is answered by
the same Gateway, batcher and model pool as HTTP, with no second loop or thread hop.
With several workers every one binds the same port with SO_REUSEPORT and the kernel
spreads connections among them; a single worker binds it alone, so a stray process can
never share (and silently take half of) its port.
"""

from __future__ import annotations

import grpc

from turnout.gateway.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from turnout.gateway.grpc.servicer import InferenceServicer

DRAIN_S = 30.0
"""How long calls in flight may take to finish when the worker stops (as uvicorn's HTTP)."""


class GrpcServer:
    """`GRPCInferenceService` on `host:port`, for one worker process."""

    def __init__(
        self,
        servicer: InferenceServicer,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        share_port: bool,
    ) -> None:
        self.servicer = servicer
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.max_message_bytes = max_message_bytes
        """Largest request accepted; a larger one is refused with RESOURCE_EXHAUSTED."""
        self.share_port = share_port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind and serve; raises when the port cannot be bound, as HTTP would."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", int(self.share_port)),
            ]
        )
        # the generated registration is untyped; the servicer's methods are
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        try:
            server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot serve gRPC on {self.address}: {exc}") from None
        await server.start()
        self._server = server

    async def stop(self, grace_s: float = DRAIN_S) -> None:
        """Refuse new calls and let those in flight finish (for `grace_s` at most)."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
