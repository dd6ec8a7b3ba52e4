-- The application connects as a role that neither owns the tables nor bypasses RLS.
CREATE ROLE onemeter_app LOGIN PASSWORD 'change-me' NOSUPERUSER NOBYPASSRLS;
