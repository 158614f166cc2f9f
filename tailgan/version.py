"""tailgan's version and the machine it runs on, in a module of its own so that every layer can name them."""

__version__ = "0.1.0"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), for the machine line of reports and benchmarks."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
