"""Small image helpers for display (admin) of stored drawings."""

import io

from PIL import Image, ImageOps


def image28_png(image28: bytes) -> bytes:
    """The 784-byte model input (255 = ink) as a PNG, dark ink on white like the drawing."""
    img = ImageOps.invert(Image.frombytes("L", (28, 28), image28))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
