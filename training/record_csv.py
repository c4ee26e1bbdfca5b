"""Result rows as CSV text and back: the one writer of the harnesses' result files (dict rows, and
records: dataclasses, one per method x case x setting) and the one reader of their ``records.csv``."""

import csv
import io
from dataclasses import asdict, fields
from typing import Callable, Dict, List, Optional, Sequence, Type, TypeVar

Record = TypeVar("Record")

# Field annotation -> how its CSV text becomes a value again.
_PARSERS: Dict[str, Callable[[str], object]] = {"bool": lambda text: text == "True", "int": int, "float": float,
                                                "str": str}


def csv_text(fieldnames: Sequence[str], rows: Sequence[Dict[str, object]], line_end: str = "\n") -> str:
    """Rows of dicts as CSV text under a header of ``fieldnames``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator=line_end)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def records_csv(rows: Sequence[object], row_type: type, float_digits: Optional[int] = None,
                line_end: str = "\r\n") -> str:
    """Dataclass ``rows`` of ``row_type`` as CSV text under a header of its field names; floats in
    full (``repr``), or to ``float_digits`` significant digits."""
    values = [asdict(row) for row in rows]
    if float_digits is not None:
        values = [{key: (f"{value:.{float_digits}g}" if isinstance(value, float) else value) for key, value in row.items()}
                  for row in values]
    return csv_text([field.name for field in fields(row_type)], values, line_end)


def read_records_csv(text: str, row_type: Type[Record]) -> List[Record]:
    """The rows :func:`records_csv` wrote, typed again by ``row_type``'s field annotations."""
    kinds = {field.name: getattr(field.type, "__name__", str(field.type)) for field in fields(row_type)}
    return [row_type(**{key: _PARSERS[kinds[key]](value) for key, value in row.items()})  # type: ignore[call-arg]
            for row in csv.DictReader(io.StringIO(text))]
