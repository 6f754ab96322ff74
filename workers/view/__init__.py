"""``posestream view``: a live page of every camera's people, skeletons, tracks and activities."""
