-- A person's language (issue 14): whether they chose it themselves. Until they do, the console
-- follows their browser's language; notifications use `language` (zh-CN unless the registry
-- says otherwise) all the same. Choosing in the console (the menu's switch or the notification
-- preferences) stores both.
ALTER TABLE people ADD COLUMN language_chosen boolean NOT NULL DEFAULT false;
