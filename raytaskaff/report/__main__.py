"""python -m raytaskaff.report OUT: rebuild OUT/report from OUT/results."""

import sys

from raytaskaff.errors import one_line
from raytaskaff.report.render import build_report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m raytaskaff.report OUT   (rebuilds OUT/report from OUT/results)", file=sys.stderr)
        return 2
    try:
        path = build_report(args[0])
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args[0]}: cannot build the report ({type(e).__name__}: {one_line(e)})", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
