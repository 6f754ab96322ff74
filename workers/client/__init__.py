"""The Python client: publish frames to posestream and subscribe to its events.

```python
from workers.client import EventSubscriber, FramePublisher

with FramePublisher("redis://localhost:6379/0", policy="drop", max_backlog=64) as pub:
    pub.publish(frame_bgr, camera_id="door-1")
with EventSubscriber("redis://localhost:6379/0", start="$") as sub:
    for message in sub:  # PersonEvent | FrameResult (| DeadLetter with kinds=(..., "dead"))
        print(message)
```
"""

from workers.client.connection import connect, resolve_redis_url
from workers.client.publisher import (
    BackpressureTimeout,
    FramePublisher,
    FrameTooLarge,
    PublishOutcome,
    encode_image,
)
from workers.client.sources import FrameSource, SourceError, camera_id_for
from workers.client.subscriber import EventSubscriber, Message, Received

__all__ = [
    "BackpressureTimeout",
    "FrameTooLarge",
    "EventSubscriber",
    "FramePublisher",
    "FrameSource",
    "Message",
    "PublishOutcome",
    "Received",
    "SourceError",
    "camera_id_for",
    "connect",
    "encode_image",
    "resolve_redis_url",
]
