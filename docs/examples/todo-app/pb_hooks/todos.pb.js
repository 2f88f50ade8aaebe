/// <reference path="../pb_data/types.d.ts" />

// GET /api/todo/stats: how many todos there are, and how many are done.
routerAdd("GET", "/api/todo/stats", (e) => {
  const all = $app.countRecords("todos")
  const done = $app.countRecords("todos", $dbx.hashExp({ done: true }))
  return e.json(200, { all: all, done: done })
})
