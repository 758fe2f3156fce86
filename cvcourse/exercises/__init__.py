"""Checkers for the chapters' coding exercises, one module per part of the course.

Each checker runs the student's function on generated cases, compares it with the
package's reference, prints one sentence saying pass or fail with the measured error, and
returns True/False — in the style of the CS231n / EECS 498 checks. Every checker is
importable from here: ``from cvcourse import exercises; exercises.check_iou(my_iou)``.
"""

from ._core import report as report  # the verdict sentence every checker prints
from .detection import *  # noqa: F401,F403
from .detr import *  # noqa: F401,F403
from .distributed import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .instance import *  # noqa: F401,F403
from .interpret import *  # noqa: F401,F403
from .segmentation import *  # noqa: F401,F403
from .single_stage import *  # noqa: F401,F403
from .vit import *  # noqa: F401,F403
