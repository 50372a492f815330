"""Building and parsing RendezvousMessage payloads; constant replies are encoded once."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

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


# Largest sizes of the fields hbbs passes on from one client to another (docs/protocol.md
# §3.4, §4): no real client comes near them, and without them a request could make hbbs send
# a registered peer a 60 KB datagram. A message with a larger field is not forwarded.
MAX_ADDR_BYTES = 18  # AddrMangle: at most 16 bytes in the IPv4 form, 18 in the IPv6 one (§4)
FIELD_CAPS = {
    "socket_addr": MAX_ADDR_BYTES,
    "socket_addr_v6": MAX_ADDR_BYTES,
    "local_addr": MAX_ADDR_BYTES,
    "id": 100,  # the database column is varchar(100)
    "uuid": 64,  # relay pairing key: UUID text (36 characters)
    "relay_server": 261,  # host[:port]: a 253-byte DNS name or [IPv6], then :port
    "licence_key": 128,  # base64 of a 32-byte public key is 44 characters
    "version": 64,  # "1.4.2"
    "token": 1024,  # API login token
    "pk": 256,  # signed IdPk: 64-byte signature + id + 32-byte key (§5.4)
}
MAX_TEXT_BYTES = 256  # every other text or bytes field (refuse_reason, switch_code, ...)


def oversized_field(msg: Message) -> tuple[str, int, int] | None:
    """The first field of ``msg`` (nested messages included) larger than its cap, as
    (dotted name, size, cap); ``None`` when every field fits."""
    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Message):
            found = oversized_field(value)
            if found is not None:
                return f"{fd.name}.{found[0]}", found[1], found[2]
        elif isinstance(value, str | bytes):
            size = len(value.encode()) if isinstance(value, str) else len(value)
            cap = FIELD_CAPS.get(fd.name, MAX_TEXT_BYTES)
            if size > cap:
                return fd.name, size, cap
    return None


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


MAX_CONFIG_UPDATE_BYTES = 1200  # one unfragmented datagram on any path


def config_update_problem(servers: list[str]) -> str | None:
    """Why ConfigUpdate with ``servers`` (-R) cannot be sent by UDP, or None."""
    cap = FIELD_CAPS["relay_server"]
    for server in servers:
        if len(server.encode()) > cap:
            return f"rendezvous server {server[:40]!r}... is longer than {cap} bytes"
    payload = pb.RendezvousMessage(configure_update=config_update(1 << 30, servers))
    size = len(payload.SerializeToString())
    if size > MAX_CONFIG_UPDATE_BYTES:
        return (
            f"the rendezvous server list makes a {size}-byte ConfigUpdate, more than the "
            f"{MAX_CONFIG_UPDATE_BYTES} bytes of one UDP datagram; list fewer servers"
        )
    return None


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
