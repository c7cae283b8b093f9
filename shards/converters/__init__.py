"""Dataset converters: released datasets -> trimo shard sets (one set per split).

`common` holds what every converter shares (sample building, key cleaning, events, the
write-time length filter, train-split statistics); one module per dataset builds its samples:
`humanml3d`, `kitml`, `babel`, `restore` (HumanML3D (Restore) for localization). The CLIs are
tools/convert_<dataset>.py.
"""
from .common import (FPS, LengthFilter, caption, clean_key, convert_all, make_sample, mirror_sample, mirrored_key,
                     write_dataset)

__all__ = ["FPS", "LengthFilter", "caption", "clean_key", "convert_all", "make_sample", "mirror_sample",
           "mirrored_key", "write_dataset"]
