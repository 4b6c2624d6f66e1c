"""matplotlib finds the CJK font in every lab: a Chinese title renders with no "Glyph ...
missing" warning (the d2l-zh book labels its plots in Chinese)."""

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 4, 9])
    ax.set_title("训练损失 (损失函数)")
    ax.set_xlabel("迭代周期")
    fig.savefig("/tmp/cjk.png")
missing = [str(w.message) for w in caught if "missing" in str(w.message).lower()]
assert not missing, missing
font = font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))
assert "wqy" in font.lower(), font
print("CJK font check passed:", font)
