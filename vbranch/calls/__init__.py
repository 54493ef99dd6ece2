"""Calls: the live branch's signaling handler and what happens during a call.

`vbranch.calls.coordinator` decides who may do what on the WebSocket (greetings,
offers, checklists, ending a call) and drives the queue desk;
`vbranch.calls.media` carries a call's media out against the media hub (WebRTC
negotiation, media health, recordings, face checks); `vbranch.calls.checklists`
loads the service checklists file and applies it at start. Built and wired in
`vbranch.bootstrap`; nothing is re-exported here, so importing the package is cheap.
"""
