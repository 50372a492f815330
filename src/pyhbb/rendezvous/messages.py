"""Building and parsing RendezvousMessage payloads; constant replies are encoded once."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from pyhbb.wire import rendezvous_pb2 as pb

RendezvousMessage = pb.RendezvousMessage
Result = pb.RegisterPkResponse.Result
Failure = pb.PunchHoleResponse.Failure


def parse(payload: bytes) -> pb.RendezvousMessage | None:
    """Parse one message; ``None`` for bytes that are not a RendezvousMessage."""
    msg = pb.RendezvousMessage()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        return None
    return msg


def register_pk_response(result: int, keep_alive: int = 0) -> bytes:
    return pb.RendezvousMessage(
        register_pk_response=pb.RegisterPkResponse(result=result, keep_alive=keep_alive)  # type: ignore[arg-type]
    ).SerializeToString()


def punch_failure(failure: int, other: str = "") -> bytes:
    return pb.RendezvousMessage(
        punch_hole_response=pb.PunchHoleResponse(failure=failure, other_failure=other)  # type: ignore[arg-type]
    ).SerializeToString()


def config_update(serial: int, servers: list[str]) -> pb.ConfigUpdate:
    return pb.ConfigUpdate(serial=serial, rendezvous_servers=servers)


REGISTER_PEER_OK = pb.RendezvousMessage(
    register_peer_response=pb.RegisterPeerResponse(request_pk=False)
).SerializeToString()
REGISTER_PEER_SEND_PK = pb.RendezvousMessage(
    register_peer_response=pb.RegisterPeerResponse(request_pk=True)
).SerializeToString()
REGISTER_PK = {value: register_pk_response(value) for value in Result.values()}
PUNCH_ID_NOT_EXIST = punch_failure(Failure.ID_NOT_EXIST)
PUNCH_OFFLINE = punch_failure(Failure.OFFLINE)
PUNCH_LICENSE_MISMATCH = punch_failure(Failure.LICENSE_MISMATCH)
