"""symjax_sr: differentiable symbolic regression on JAX."""

import importlib.metadata

from ._evaluate import Evaluator as Evaluator
from ._evaluate import ReferenceEvaluator as ReferenceEvaluator
from ._evaluate import evaluate as evaluate
from ._evaluate import evaluate_loss as evaluate_loss
from ._evaluate import get_evaluator as get_evaluator
from ._evaluate import l2_loss as l2_loss
from ._operators import OPERATORS as OPERATORS
from ._operators import Operator as Operator
from ._operators import OperatorSet as OperatorSet
from ._operators import get_operator as get_operator
from ._operators import make_operator_set as make_operator_set
from ._random import random_population as random_population
from ._random import random_tree as random_tree
from ._tree import Complexities as Complexities
from ._tree import Population as Population
from ._tree import Tree as Tree
from ._tree import stack_trees as stack_trees

__version__ = importlib.metadata.version("symjax_sr")
