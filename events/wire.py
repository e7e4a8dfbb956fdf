"""How an envelope sits in a Redis Stream entry: CloudEvents JSON (structured mode) in one field.

A stream entry has a single field, `__data__` (FastStream's data field), whose value is the
envelope as UTF-8 JSON, so `redis-cli XRANGE userbus.users - +` shows readable events and any
client can consume them. FastStream's default Redis format is binary; this format replaces it
on the relay's broker, and the consumers read the field's bytes themselves.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from faststream.redis.parser import MessageFormat

if TYPE_CHECKING:
    from fast_depends.library.serializer import SerializerProto
    from faststream._internal.basic_types import SendableMessage
    from faststream._internal.parser import CodecProto

STREAM_FIELD = "__data__"
# FastStream logs every message at INFO; its brokers log here instead, one level lower.
BROKER_LOGGER = "userbus.broker"
CONTENT_TYPE = "application/cloudevents+json"


class CloudEventJSONFormat(MessageFormat):
    """Publishes the envelope's JSON bytes as they are; reads them back the same way."""

    __slots__ = ()

    @classmethod
    async def encode(
        cls,
        *,
        message: Union[Sequence["SendableMessage"], "SendableMessage"],
        reply_to: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str,
        serializer: Optional["SerializerProto"] = None,
        codec: Optional["CodecProto"] = None,
    ) -> bytes:
        """The envelope JSON itself; headers are not stored (they are inside the envelope)."""
        if isinstance(message, bytes):
            return message
        if isinstance(message, str):
            return message.encode()
        msg = await cls.build(
            message=message,
            reply_to=reply_to,
            headers=headers,
            correlation_id=correlation_id,
            serializer=serializer,
            codec=codec,
        )
        return msg.data

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        """The entry's bytes as the body, declared as CloudEvents JSON."""
        return data, {"content-type": CONTENT_TYPE}
