"""What ``chipnet-tf`` and the absl recipes share as command-line programs.

absl's ``app.run`` lists no flags for a console script (``--helpshort`` looks for flags
defined in ``sys.argv[0]``), exits 1 for usage errors, rejects ``-h`` and turns the Python
logs up to INFO. :func:`run` wraps it so that:

- ``-h``/``--help``/``--helpshort`` (and ``COMMAND --help``) print the program's own usage
  and flags, one line each, and exit 0; absl's global flags stay behind ``--helpfull``;
- a bad flag or argument is one line on stderr and exits 2;
- logs stay at WARNING unless ``-v`` (INFO) or ``--verbosity=N`` is given.
"""

import logging
import os
import re
import sys

from absl import app, flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS
HELP_ARGS = ("-h", "--help", "--helpshort", "-?")
USAGE_EXIT = 2


def flag_lines(names, indent="  "):
    """One line per flag: ``--name=VALUES  help (default: ...)``, aligned."""
    rows = []
    for name in names:
        flag = FLAGS[name]
        if flag.flag_type() == "bool":
            spec = f"--[no]{name}"
        elif getattr(flag.parser, "enum_values", None):
            spec = f"--{name}={'|'.join(flag.parser.enum_values)}"
        else:
            spec = f"--{name}={flag.flag_type().upper()}"
        text = re.sub(r"^<[^>]*>: ", "", flag.help)  # DEFINE_enum's prefix: the values are in spec
        default = "" if flag.default in (None, "") else f" (default: {flag.default})"
        rows.append((spec, f"{text}{default}"))
    width = max((len(spec) for spec, _ in rows), default=0)
    return [f"{indent}{spec:<{width}}  {text}" for spec, text in rows]


def verbosity_lines(indent="  "):
    return [
        "",
        f"{indent}-v, --verbosity=N  show library logs (-v: INFO); by default only warnings and errors",
        f"{indent}--helpfull         also list absl's global flags",
    ]


def usage_error(prog, message):
    """Prints a one-line usage error and exits with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    print(f"Try '{prog} --help'.", file=sys.stderr)
    sys.exit(USAGE_EXIT)


def run(main, prog, help_text, argv=None):
    """``absl.app.run(main)`` with help, exit statuses and verbosity as described above.

    Args:
        main: ``main(argv)``; may raise ``app.UsageError``.
        prog: the program name used in messages.
        help_text: ``help_text(argv) -> str``, the help for these arguments.
        argv: defaults to ``sys.argv``.
    """
    argv = list(sys.argv if argv is None else argv)
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(help_text(argv))
        sys.exit(0)
    argv = [argv[0]] + ["--verbosity=0" if arg == "-v" else arg for arg in argv[1:]]

    def parse(args):
        try:
            return FLAGS(args)
        except flags.Error as e:
            usage_error(prog, str(e))

    def quiet_main(args):
        if not FLAGS["verbosity"].present:  # app.run turns it up to INFO otherwise
            absl_logging.set_verbosity(absl_logging.WARNING)
        elif FLAGS.verbosity >= 0:  # INFO or more: native_log_filter holds nothing back now
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        # TensorFlow's logger has its own handler: without this its warnings print twice,
        # once more through absl's handler on the root logger.
        logging.getLogger("tensorflow").propagate = False
        try:
            return main(args)
        except app.UsageError as e:
            usage_error(prog, str(e))

    app.run(quiet_main, argv=argv, flags_parser=parse)
