"""The paper's experiments, the hindsight upper bound on SLO attainment, reports and plots.

Control-plane rule: nothing here imports torch (numpy, scipy, highspy and matplotlib only).
"""
