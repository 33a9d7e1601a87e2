"""A run sink for tests: keeps what the engine sends."""


class ListSink:
    def __init__(self):
        self.info = None
        self.snapshots = []

    def started(self, info):
        self.info = info

    def snapshot(self, snapshot):
        self.snapshots.append(snapshot)
