"""Personal avatars from one ordinary video (``npga create``): decode and select frames, a
fixed virtual camera with head masks, the live sender's tracking, then ``npga.train``."""

from npga.create.pipeline import QUALITIES, CreateConfig, CreateError, Quality, create_avatar

__all__ = ["QUALITIES", "CreateConfig", "CreateError", "Quality", "create_avatar"]
