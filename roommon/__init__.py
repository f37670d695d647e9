"""roommon: monitoring daemon for kyphoplasty and vertebroplasty procedure rooms.

Not a certified medical device. See README.md.
"""

__version__ = "0.1.0"
