"""The websocket hub: students publish states, teachers subscribe to their class, SQLite keeps the record.

``server`` (tornado routes, ``Hub``, ``HubConfig``), ``protocol`` (sans-I/O logic), ``store``, ``client``.
"""
