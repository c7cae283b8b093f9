"""The motion domain: the 22-joint skeleton, rotations, the 263-d features, mirroring, importers
of mocap formats, and the events of captions. Imports nothing else of trimo."""
