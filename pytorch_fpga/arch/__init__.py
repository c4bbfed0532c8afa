"""Layer 2, models of arrays: the weight-stationary systolic array, WS/OS/IS dataflows, SCALE-Sim reference."""
