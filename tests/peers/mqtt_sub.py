#!/usr/bin/python3
"""An independent MQTT subscriber for the tests (Debian's python3-paho-mqtt).

Usage: mqtt_sub.py PORT USER PASSWORD CLIENT_ID FILTER [FILTER...]

Subscribes at QoS 1 with a persistent session (clean_session false), so messages published while
it is away (a broker restart) are kept for it, and reconnects by itself. Prints one JSON line per
message: topic, payload (text; bytes that are not UTF-8 as \\ufffd), retain, qos, dup. Prints
{"subscribed": true} once the broker granted the subscription.
"""

import json
import sys

import paho.mqtt.client as mqtt


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    port, user, password, client_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    filters = sys.argv[5:]
    client = mqtt.Client(client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)

    def on_connect(c, userdata, flags, rc):
        if rc == 0:
            c.subscribe([(f, 1) for f in filters])

    def on_subscribe(c, userdata, mid, granted):
        out({"subscribed": True})

    def on_message(c, userdata, msg):
        out({
            "topic": msg.topic,
            "payload": msg.payload.decode("utf-8", "replace"),
            "retain": bool(msg.retain),
            "qos": msg.qos,
            "dup": bool(msg.dup),
        })

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect_async("127.0.0.1", port, keepalive=5)
    client.loop_forever(retry_first_connection=True)


main()
