"""symjax_sr: differentiable symbolic regression on JAX."""

import importlib.metadata

from . import _kernels as _kernels  # registers the fast evaluators
from ._constants import ConstantOptions as ConstantOptions
from ._constants import ConstantResult as ConstantResult
from ._constants import ConstantStatus as ConstantStatus
from ._constants import optimize_constants as optimize_constants
from ._constants import population_loss as population_loss
from ._constants import select_members as select_members
from ._distill import distill as distill
from ._evaluate import Evaluator as Evaluator
from ._evaluate import ReferenceEvaluator as ReferenceEvaluator
from ._evaluate import evaluate as evaluate
from ._evaluate import evaluate_loss as evaluate_loss
from ._evaluate import get_evaluator as get_evaluator
from ._evaluate import l2_loss as l2_loss
from ._fastmath import fast_cos as fast_cos
from ._fastmath import fast_sin as fast_sin
from ._kernels import AutoEvaluator as AutoEvaluator
from ._kernels import SelectEvaluator as SelectEvaluator
from ._kernels import SwitchEvaluator as SwitchEvaluator
from ._kernels import choose_evaluator as choose_evaluator
from ._logging import AbstractLoggerSpec as AbstractLoggerSpec
from ._logging import TensorBoardLoggerSpec as TensorBoardLoggerSpec
from ._memory import SearchMemoryError as SearchMemoryError
from ._operators import OPERATORS as OPERATORS
from ._operators import Operator as Operator
from ._operators import OperatorSet as OperatorSet
from ._operators import get_operator as get_operator
from ._operators import make_operator_set as make_operator_set
from ._options import MutationWeights as MutationWeights
from ._options import SearchOptions as SearchOptions
from ._random import random_population as random_population
from ._random import random_tree as random_tree
from ._regressor import PySRRegressor as PySRRegressor
from ._run import HofEntry as HofEntry
from ._run import SearchResult as SearchResult
from ._run import run_search as run_search
from ._strings import infer_operator_set as infer_operator_set
from ._strings import parse_expression as parse_expression
from ._strings import tree_to_string as tree_to_string
from ._sympy import sympy_to_tree as sympy_to_tree
from ._sympy import tree_to_latex as tree_to_latex
from ._sympy import tree_to_sympy as tree_to_sympy
from ._tree import Complexities as Complexities
from ._tree import Population as Population
from ._tree import Tree as Tree
from ._tree import stack_trees as stack_trees
from ._units import parse_unit as parse_unit
from .eql import EQL as EQL
from .eql import EQLLayer as EQLLayer
from .eql import EQLRegressor as EQLRegressor
from .eql import l0_penalty as l0_penalty
from .eql import l1_penalty as l1_penalty
from .eql import l12_penalty as l12_penalty
from .export import EquinoxExpression as EquinoxExpression
from .export import check_exportable as check_exportable
from .export import quantise_to as quantise_to
from .export import stack_equinox as stack_equinox
from .export import stack_torch as stack_torch
from .export import swap_in as swap_in
from .export import to_equinox as to_equinox
from .export import to_torch as to_torch

__version__ = importlib.metadata.version("symjax_sr")
