#!/usr/bin/python3
"""Publishes what benches/mqtt_throughput.rs publishes, with Debian's paho-mqtt: the script a user
would otherwise write. Usage: mqtt_paho_publisher.py PORT QOS EVENTS INFLIGHT

Topic bench/r1/seq/<i>, payload <i>, for i in 0..EVENTS; returns once paho reports every message
published (QoS 1: acknowledged; QoS 0: written). Prints the CPU seconds it used."""

import sys
import threading
import time

import paho.mqtt.client as mqtt

port, qos, events, inflight = (int(a) for a in sys.argv[1:5])
done = threading.Event()
count = [0]


def on_publish(client, userdata, mid):
    count[0] += 1
    if count[0] == events:
        done.set()


client = mqtt.Client(client_id="paho-bench", clean_session=True, protocol=mqtt.MQTTv311)
client.max_inflight_messages_set(inflight)
client.max_queued_messages_set(0)
client.on_publish = on_publish
client.connect("127.0.0.1", port, keepalive=30)
client.loop_start()
start = time.process_time()
for i in range(events):
    client.publish("bench/r1/seq/%d" % i, str(i), qos=qos)
done.wait()
used = time.process_time() - start
client.disconnect()
client.loop_stop()
print(used)
