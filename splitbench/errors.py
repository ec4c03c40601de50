"""The one exception type that the command line turns into a one-line message."""


class SplitbenchError(Exception):
    """A problem with the user's input or environment, reported as one line with exit code 2.

    Raise it with a message that names the offending value and, where there is a
    short list of valid ones, lists them. Programming errors should stay ordinary
    exceptions so that they keep their traceback.
    """
