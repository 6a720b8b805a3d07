"""Equation-learner networks (EQL, EQL÷, SEQL) as equinox modules, their sparsity
regularisers and training phases, extraction to SymPy, and `EQLRegressor`."""

from ._extract import eql_to_sympy as eql_to_sympy
from ._extract import round_floats as round_floats
from ._extract import simplify_expression as simplify_expression
from ._layers import DEFAULT_UNITS as DEFAULT_UNITS
from ._layers import EQL as EQL
from ._layers import EQLLayer as EQLLayer
from ._layers import hard_concrete as hard_concrete
from ._options import EQLOptions as EQLOptions
from ._regressor import EQLRegressor as EQLRegressor
from ._regularisers import REGULARISERS as REGULARISERS
from ._regularisers import eql_layers as eql_layers
from ._regularisers import l0_penalty as l0_penalty
from ._regularisers import l1_penalty as l1_penalty
from ._regularisers import l12_penalty as l12_penalty
from ._schedule import EQLPhases as EQLPhases
from ._schedule import ThresholdMaskState as ThresholdMaskState
from ._schedule import threshold_mask as threshold_mask
from ._train import TrainResult as TrainResult
from ._train import data_loss as data_loss
from ._train import train as train
from ._units import get_unit as get_unit
from ._units import unit_names as unit_names
