# labctl: the offline hint for failed downloads in Jupyter kernels (labctl_site.py).
try:
    import labctl_site

    labctl_site.ipython(get_ipython())  # noqa: F821 (IPython's own)
except Exception:  # noqa: BLE001 - a hint must never break a kernel
    pass
