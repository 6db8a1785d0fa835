"""What a user would write instead of Switchyard: consume, filter JSON, produce, commit.

At-least-once, as the router is: a batch's input offsets are committed only after every
record it produced is flushed to the broker. The filter is `json_filter`'s
`field >= value` on a number; a record that is not JSON, or fails the test, is dropped.
The clients use the router's settings (idempotent producer, murmur2 partitioner, linger 5 ms).

    python3 json_filter_loop.py BOOTSTRAP FROM TO GROUP FIELD VALUE

Runs until killed.
"""

import json
import sys

from confluent_kafka import Consumer, Producer


def main() -> None:
    bootstrap, source, sink, group, field, value = sys.argv[1:7]
    threshold = float(value)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
        }
    )
    consumer.subscribe([source])
    while True:
        batch = consumer.consume(num_messages=1000, timeout=0.1)
        if not batch:
            continue
        for message in batch:
            if message.error():
                continue
            try:
                document = json.loads(message.value())
                passes = float(document[field]) >= threshold
            except (ValueError, KeyError, TypeError):
                passes = False
            if not passes:
                continue
            while True:
                try:
                    producer.produce(
                        sink,
                        value=message.value(),
                        key=message.key(),
                        headers=message.headers(),
                        timestamp=message.timestamp()[1],
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        producer.flush()
        consumer.commit(asynchronous=False)


if __name__ == "__main__":
    main()
