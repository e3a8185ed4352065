"""The nightly regression check: what one scale's results measured (``figures``), a committed
baseline of it with tolerances (``baseline``), and their comparison with its report and the
history of earlier nightlies (``compare``, ``history``)."""
