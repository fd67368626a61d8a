"""The types a skops file may ask turnout to rebuild: an explicit list, not whole packages.

Trusting every class of scikit-learn, NumPy or SciPy let a "safe" file carry objects such
as NumPy's `DataSource`, whose `__del__` deletes a directory of the file's choosing. The
list holds scikit-learn's estimators, the helper objects fitted estimators keep (trees,
losses, kernels, distance metrics, optimizers), and NumPy/SciPy array, scalar, dtype and
random-state types; never a function.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache

import numpy as np
import numpy.dtypes
import scipy.sparse
from sklearn.utils import all_estimators

HELPER_MODULES = (
    "sklearn._loss.link",
    "sklearn._loss.loss",
    "sklearn.gaussian_process.kernels",
    "sklearn.metrics._dist_metrics",
)
"""scikit-learn modules whose own classes are all data that fitted estimators hold."""

HELPER_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.cluster._bisect_k_means._BisectingTree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
    "scipy.interpolate._bsplines.BSpline",
)
"""Further scikit-learn (and SciPy) objects that fitted estimators keep, as skops names them."""

RANDOM_TYPES = (
    np.random.RandomState,
    np.random.Generator,
    np.random.SeedSequence,
    np.random.MT19937,
    np.random.PCG64,
    np.random.PCG64DXSM,
    np.random.Philox,
    np.random.SFC64,
)


def type_name(cls: type) -> str:
    """A class as skops names it: its defining module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


@cache
def trusted_types() -> frozenset[str]:
    """Every type name a skops file may hold (computed once per process)."""
    names = {type_name(cls) for _, cls in all_estimators()}
    names.update(HELPER_TYPES)
    for module_name in HELPER_MODULES:
        module = importlib.import_module(module_name)
        names.update(
            type_name(obj)
            for obj in vars(module).values()
            if inspect.isclass(obj) and obj.__module__ == module_name
        )
    names.update(type_name(cls) for cls in _array_types())
    return frozenset(names)


def _array_types() -> set[type]:
    scalars = {cls for cls in np.sctypeDict.values() if isinstance(cls, type)}
    dtypes = {obj for obj in vars(numpy.dtypes).values() if isinstance(obj, type)}
    sparse = {
        obj
        for obj in vars(scipy.sparse).values()
        if isinstance(obj, type) and issubclass(obj, scipy.sparse.sparray | scipy.sparse.spmatrix)
    }
    return {np.ndarray, np.dtype, np.ma.MaskedArray, *scalars, *dtypes, *sparse, *RANDOM_TYPES}
