from .actuator import ActuatorState, ActuatorType, HotcbActuator, ValueRefused, validate_value
from .builders import loss_actuators, mutable_state, optimizer_actuators
from .state import MutableState, UnknownKnob

__all__ = [
    "ActuatorState", "ActuatorType", "HotcbActuator", "MutableState", "UnknownKnob", "ValueRefused",
    "loss_actuators", "mutable_state", "optimizer_actuators", "validate_value",
]
