"""The wire contract: the only code the device and the cloud share.

It holds audio-format constants, the coded error base, and (from the uplink issue on)
the MQTT topic tree and message models. It imports nothing from `firmware`,
`pipeline`, `review_opt_out` or `hardware`.
"""
