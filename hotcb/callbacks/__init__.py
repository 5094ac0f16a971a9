"""Built-in callbacks: duck-typed ``handle(event, env)`` + ``set_params(**kw)``, one per file.

Load one live with ``hotcb cb load ID --module hotcb.callbacks.timing:TimingCallback``. They
add their readings to ``env["metrics"]``; the kernel records metrics after dispatching them.
"""

from .anomaly import AnomalyGuard
from .grad_stats import GradStatsCallback
from .heartbeat import HeartbeatCallback
from .jsonl_logger import JsonlLoggerCallback
from .system_stats import SystemStatsCallback
from .tensor_stats import TensorStatsCallback
from .timing import TimingCallback

__all__ = [
    "AnomalyGuard", "GradStatsCallback", "HeartbeatCallback", "JsonlLoggerCallback",
    "SystemStatsCallback", "TensorStatsCallback", "TimingCallback",
]
