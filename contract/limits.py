"""Size limits every Earmark broker config and MQTT client applies (one place, both sides).

The largest legal message is a JSON header (16 KiB) or an audio chunk (8-byte header +
200 ms of PCM, 6.4 KB). Anything near 64 KiB is already out of contract, so brokers and
clients refuse it before it is read whole into memory.
"""

from __future__ import annotations

from typing import Final

# MQTT payload bytes a broker accepts in one PUBLISH (mosquitto `message_size_limit`).
MAX_MESSAGE_BYTES: Final = 64 * 1024
# Whole MQTT packet (topic, properties and payload) a client or broker accepts
# (MQTT 5 Maximum Packet Size, mosquitto `max_packet_size`).
MAX_PACKET_BYTES: Final = MAX_MESSAGE_BYTES + 1024
