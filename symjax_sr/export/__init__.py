"""Exports of found formulas: equinox modules, PyTorch modules, fine-tuning helpers."""

from ._check import check_exportable as check_exportable
from ._equinox import EquinoxExpression as EquinoxExpression
from ._equinox import ParametricEquinoxExpression as ParametricEquinoxExpression
from ._equinox import TemplateEquinoxExpression as TemplateEquinoxExpression
from ._equinox import stack_equinox as stack_equinox
from ._equinox import template_to_equinox as template_to_equinox
from ._equinox import to_equinox as to_equinox
from ._finetune import quantise_to as quantise_to
from ._finetune import swap_in as swap_in
from ._torch import stack_torch as stack_torch
from ._torch import to_torch as to_torch
