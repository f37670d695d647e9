"""``roommon display``: the wall display and the nurses' station, served to browsers.

Where it sits: above the daemon, beside the CLI. It reads the site's topics
(alarm events, room state, room events, timers, status and the feeds it
shows) read-only, keeps a :class:`~roommon.web.site.SiteView` of them and
pushes every change to the browsers over a WebSocket. Commands from a
signed-in user go back through the documented command topics
(:mod:`roommon.web.mqtt_source`), or straight into an in-process daemon for
the demo (:mod:`roommon.web.local`). Everything the browser runs is in
``static/`` and served by roommon itself: no CDN, no front-end library.
"""
