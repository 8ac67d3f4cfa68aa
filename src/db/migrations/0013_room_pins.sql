-- Dialing into a telehealth room by phone (issue 24): each invitee's visit PIN is derived
-- from the room-link key (rooms::link) and never stored; this is its blind index
-- (KeyRing::blind_index "room-pin"), which finds the invitation a keyed PIN opens.
ALTER TABLE room_invitees ADD COLUMN pin_index TEXT;
CREATE INDEX room_invitees_pin ON room_invitees (pin_index);
