"""Converters from raw public datasets to RecBole atomic files plus the yaml UR4Rec needs.

``python -m ur4rec_recbole convert FORMAT SRC... --name NAME --out DIR``
writes ``DIR/NAME/NAME.{inter,item[,user],yaml}``. One module per source
format, each a registered :class:`~ur4rec_recbole.convert.base.Converter`;
the shared pieces are the streaming readers (``sources``), the text
cleaning (``text``), the on-disk interaction spool with its k-core filter
(``interactions``) and the atomic writer (``writer``).
"""

from ur4rec_recbole.convert import amazon, delimited, lcrec, movielens  # noqa: F401  (they register themselves)
from ur4rec_recbole.convert.base import FORMATS, Converter, Report, register, run_conversion

__all__ = ["FORMATS", "Converter", "Report", "register", "run_conversion"]
