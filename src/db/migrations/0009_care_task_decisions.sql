-- How a work-list item was closed (issue 22): `approved` or `declined` for a refill request
-- (the brief's UC2; an approved one is handed to the pharmacy), NULL for one simply done.
ALTER TABLE care_tasks ADD COLUMN outcome TEXT;
